"""The broker: only delivers. Task names, queues, the producer, the embedded transport."""
