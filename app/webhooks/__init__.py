"""Webhooks both ways: verifying what senders POST to us, signing what we POST back."""
