"""The status page: server-rendered HTML, no build step, refreshing itself.

Sign-in: the page needs an API token with `jobs:read`, kept in an HttpOnly, SameSite=Strict
cookie. It is set by the form at /ui/login, or by opening /ui/login?token=...&next=/ui/...
once (handy for scripted browsers; the token then sits in that browser's history). The pages
only read, so a forged cross-site request can change nothing.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import RuntimeDep
from app.auth.tokens import Principal, authenticate
from app.domain.states import JobState, TargetState
from app.jobs import reads
from app.jobs.schemas import JOB_ID_PATTERN
from app.jobs.views import eta_seconds, progress
from app.runtime import Runtime
from app.store.models import Job

router = APIRouter(include_in_schema=False)
COOKIE = "keybind_token"
RECENT_JOBS = 50
FAILING_SHOWN = 100
REFRESH_RUNNING_S = 2
REFRESH_LIST_S = 5

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;
padding:0 1rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%}
td,th{padding:.35rem .6rem;border-bottom:1px solid #e2e5ea;text-align:left;font-size:.9rem}
th{background:#f4f6f8}code{font-size:.85rem}
.bar{background:#e8ebef;border-radius:6px;height:22px;overflow:hidden;display:flex}
.bar span{display:block;height:100%}.ok{background:#2f9e5b}.bad{background:#d64545}
.cx{background:#9aa3ad}.state{font-weight:600;padding:.1rem .45rem;border-radius:4px}
.s-succeeded{background:#dff3e6}.s-failed{background:#fbe0e0}.s-partial{background:#fdf0d5}
.s-running{background:#dde9fb}.s-queued{background:#eceff3}.s-cancelled{background:#eceff3}
.counts{width:auto;min-width:16rem}.counts td{font-variant-numeric:tabular-nums}
.muted{color:#6b7380;font-size:.85rem}
"""


def _page(title: str, body: str, refresh_s: int | None = None) -> HTMLResponse:
    meta = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)} · keybind</title>{meta}<style>{CSS}</style></head>"
        f"<body><p class=muted><a href=/ui>keybind</a> · status</p>{body}</body></html>",
        headers={"Cache-Control": "no-store"},
    )


def _who(request: Request, rt: Runtime) -> Principal | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    with rt.sessions() as session:
        principal = authenticate(session, token)
    return principal if principal is not None and principal.allows("jobs:read") else None


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)


def _safe_next(target: str | None) -> str:
    # Only our own pages: an open redirect would let a link send a signed-in user anywhere.
    if target and target.startswith("/ui") and "//" not in target and "\\" not in target:
        return target
    return "/ui"


def _signed_in(token: str, target: str, secure: bool) -> RedirectResponse:
    response = RedirectResponse(_safe_next(target), status_code=303)
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="strict", secure=secure, max_age=12 * 3600
    )
    return response


def _login_form(next_path: str, problem: str = "") -> HTMLResponse:
    note = f"<p style='color:#b42318'>{html.escape(problem)}</p>" if problem else ""
    return _page(
        "Sign in",
        "<h1>Sign in</h1>"
        "<p>Paste an API token with the <code>jobs:read</code> scope "
        "(<code>keybind apikey create --name me --scope jobs:read</code>).</p>"
        f"{note}<form method=post action=/ui/login>"
        f"<input type=hidden name=next value='{html.escape(_safe_next(next_path))}'>"
        "<input type=password name=token size=60 autocomplete=off autofocus> "
        "<button>Sign in</button></form>",
    )


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui/login")
def login_page(
    request: Request,
    rt: RuntimeDep,
    token: Annotated[str | None, Query(max_length=200)] = None,
    next: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    if token is None:
        return _login_form(next or "/ui")
    with rt.sessions() as session:
        principal = authenticate(session, token)
    if principal is None or not principal.allows("jobs:read"):
        return _login_form(next or "/ui", "That token is unknown, revoked or lacks jobs:read.")
    return _signed_in(token, next or "/ui", request.url.scheme == "https")


@router.post("/ui/login")
async def login_submit(request: Request, rt: RuntimeDep) -> Response:
    form = parse_qs((await request.body()).decode(errors="replace"))
    token = (form.get("token") or [""])[0].strip()
    target = (form.get("next") or ["/ui"])[0]
    with rt.sessions() as session:
        principal = authenticate(session, token) if token else None
    if principal is None or not principal.allows("jobs:read"):
        return _login_form(target, "That token is unknown, revoked or lacks jobs:read.")
    return _signed_in(token, target, request.url.scheme == "https")


@router.get("/ui/logout")
def logout() -> RedirectResponse:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "—"


def _state(state: str) -> str:
    return f"<span class='state s-{html.escape(state)}'>{html.escape(state)}</span>"


def _bar(job: Job) -> str:
    def seg(n: int, cls: str) -> str:
        return f"<span class={cls} style='width:{100 * n / job.total:.2f}%'></span>" if n else ""

    return (
        "<div class=bar role=progressbar aria-valuemin=0 aria-valuemax=100 "
        f"aria-valuenow={progress(job) * 100:.0f}>"
        f"{seg(job.n_succeeded, 'ok')}{seg(job.n_failed, 'bad')}{seg(job.n_cancelled, 'cx')}"
        "</div>"
    )


@router.get("/ui")
def jobs_page(request: Request, rt: RuntimeDep) -> Response:
    who = _who(request, rt)
    if who is None:
        return _to_login(request)
    jobs = reads.list_jobs(
        sessions=rt.sessions, flt=reads.JobFilter(tenant=who.tenant), before=None, limit=RECENT_JOBS
    )
    rows = "".join(
        f"<tr><td><a href='/ui/jobs/{html.escape(j.id)}'><code>{html.escape(j.id)}</code></a></td>"
        f"<td>{_state(j.state)}</td><td>{html.escape(j.provider)} {html.escape(j.region)}</td>"
        f"<td>{j.n_succeeded}/{j.total}</td><td>{j.n_failed}</td>"
        f"<td style='width:18%'>{_bar(j)}</td><td>{_when(j.created_at)}</td>"
        f"<td>{html.escape(j.source)}</td></tr>"
        for j in jobs
    )
    table = (
        "<table><tr><th>job</th><th>state</th><th>where</th><th>succeeded</th><th>failed</th>"
        f"<th>progress</th><th>created</th><th>source</th></tr>{rows}</table>"
        if jobs
        else "<p>No jobs yet.</p>"
    )
    return _page("Jobs", f"<h1>Recent jobs</h1>{table}", refresh_s=REFRESH_LIST_S)


@router.get("/ui/jobs/{job_id}")
def job_page(job_id: str, request: Request, rt: RuntimeDep) -> Response:
    who = _who(request, rt)
    if who is None:
        return _to_login(request)
    job = (
        reads.get_job(sessions=rt.sessions, job_id=job_id, tenant=who.tenant)
        if re.fullmatch(JOB_ID_PATTERN, job_id)
        else None
    )
    if job is None:
        return _page("Not found", f"<h1>No job {html.escape(job_id)}</h1>")
    failing = reads.list_targets(
        sessions=rt.sessions,
        job_id=job_id,
        state=TargetState.FAILED,
        after_id=0,
        limit=FAILING_SHOWN,
    )
    final = JobState(job.state).final
    eta = eta_seconds(job, rt.rates.job_rate(job))
    counts = "".join(
        f"<tr><td>{s.value}</td><td>{getattr(job, 'n_' + s.value)}</td></tr>" for s in TargetState
    )
    fail_rows = "".join(
        f"<tr><td><code>{html.escape(t.instance_id)}</code></td>"
        f"<td><code>{html.escape(t.error_code or '')}</code></td>"
        f"<td>{t.attempts}</td><td>{html.escape((t.error_message or '')[:200])}</td></tr>"
        for t in failing
    )
    failures = (
        "<table><tr><th>instance</th><th>error code</th><th>attempts</th><th>message</th></tr>"
        f"{fail_rows}</table>"
        + (
            f"<p class=muted>First {FAILING_SHOWN} of {job.n_failed}; all of them: "
            f"<code>GET /v1/jobs/{html.escape(job.id)}/instances?state=failed</code></p>"
            if job.n_failed > FAILING_SHOWN
            else ""
        )
        if failing
        else "<p>None.</p>"
    )
    body = (
        f"<h1>Job <code id=job-id>{html.escape(job.id)}</code> {_state(job.state)}</h1>"
        f"<p>{html.escape(job.provider)} · {html.escape(job.region)} · keys "
        f"{html.escape(', '.join(job.key_ids))} · power policy {html.escape(job.power_policy)}"
        f" · submitted by {html.escape(job.submitted_by)} via {html.escape(job.source)}</p>"
        f"{_bar(job)}<p><b id=progress>{progress(job) * 100:.1f}%</b> "
        f"({job.n_succeeded + job.n_failed + job.n_cancelled} of {job.total} done)"
        + (f" · about {eta:.0f} s left" if eta is not None and eta >= 10 else "")
        + (f" · about {eta:.1f} s left" if eta is not None and eta < 10 else "")
        + f"</p><p class=muted>created {_when(job.created_at)} · started "
        f"{_when(job.started_at)} · finished {_when(job.finished_at)}"
        + ("" if final else f" · refreshes every {REFRESH_RUNNING_S} s")
        + f"</p><h2>Counts</h2><table class=counts>{counts}</table>"
        f"<h2>Failing instances</h2>{failures}"
    )
    return _page(f"Job {job.id[:8]}", body, refresh_s=None if final else REFRESH_RUNNING_S)
