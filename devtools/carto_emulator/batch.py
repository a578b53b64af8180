"""Batch API jobs (`/api/v2/sql/job`), and the worker that runs them and CARTO 3's jobs.

POST (master key) → 201 job, run FIFO by a background thread; GET/DELETE `{sql}/job/{id}`;
statuses pending, running, done, failed (`failed_reason`), cancelled; a finished job is
forgotten after `job_ttl` seconds, then 400 "Job with id X not found".
"""

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from devtools.carto_emulator import auth, postgres
from devtools.carto_emulator.answers import HttpAnswer

MAX_JOB_PAYLOAD = 16384
MAX_QUEUED_JOBS = 64


@dataclass
class Job:
    job_id: str
    user: str
    query: str | list
    role: str | None
    api: str = "v2"  # or "v3": each API finds only its own jobs
    status: str = "pending"
    created_at: str = ""
    updated_at: str = ""
    failed_reason: str | None = None
    finished_at: float | None = None  # monotonic, for expiry
    backend_pid: int | None = None
    # CARTO 3 also names the warehouse's own job: an id CARTO's job routes do not know.
    external_id: str = field(default_factory=lambda: f"job_{uuid.uuid4().hex}")

    def serialize(self) -> dict:
        """v2's job object."""
        out = {"job_id": self.job_id, "user": self.user, "status": self.status, "query": self.query,
               "created_at": self.created_at, "updated_at": self.updated_at}
        if self.failed_reason is not None:
            out["failed_reason"] = self.failed_reason
        return out


# -- v2 routes --------------------------------------------------------------------------------

def create_job(emulator, user: str, headers, params: dict) -> tuple[int, dict]:
    role = auth.authenticate(emulator, user, headers, params, master=True)
    return 201, submit(emulator, user, role, params.get("query"), json.dumps(params)).serialize()


def get_job(emulator, user: str, headers, params: dict, job_id: str) -> tuple[int, dict]:
    auth.authenticate(emulator, user, headers, params, master=True)
    with emulator.lock:
        return 200, _found(find(emulator, user, job_id), job_id).serialize()


def cancel_job(emulator, user: str, headers, params: dict, job_id: str) -> tuple[int, dict]:
    auth.authenticate(emulator, user, headers, params, master=True)
    with emulator.lock:
        job = _found(find(emulator, user, job_id), job_id)
    return 200, cancel(emulator, job).serialize()


def _found(job, job_id: str) -> Job:
    if job is None:
        raise HttpAnswer(400, {"error": [f"Job with id {job_id} not found"]})
    return job


# -- jobs of either API -----------------------------------------------------------------------

def submit(emulator, user: str, role: str | None, query, payload: str, api: str = "v2") -> Job:
    """Queue a job; raise the 400 answer (v2's shape) for bad SQL, a large payload, a full queue."""
    valid = isinstance(query, str) and query.strip() or \
        isinstance(query, list) and query and all(isinstance(q, str) and q.strip() for q in query)
    if not valid:
        raise HttpAnswer(400, {"error": ["You must indicate a valid SQL"]})
    if len(payload) > MAX_JOB_PAYLOAD:
        raise HttpAnswer(400, {"error": [f"Your payload is too large: {len(payload)} bytes. Max size allowed"
                                         f" is {MAX_JOB_PAYLOAD} bytes (16kb). Are you trying to import data?."]})
    with emulator.lock:
        _forget_expired(emulator)
        if sum(j.status == "pending" for j in emulator.jobs.values()) >= MAX_QUEUED_JOBS:
            raise HttpAnswer(400, {"error": [f"Failed to create job. Max number of jobs ({MAX_QUEUED_JOBS})"
                                             " queued reached"]})
        now = iso_now()
        job = Job(str(uuid.uuid4()), user, query, role, api=api, created_at=now, updated_at=now)
        emulator.jobs[job.job_id] = job
    emulator.job_queue.put(job.job_id)
    return job


def find(emulator, user: str, job_id: str, api: str = "v2") -> Job | None:
    """The user's job of that API, unless unknown or expired. Call with emulator.lock held."""
    _forget_expired(emulator)
    job = emulator.jobs.get(job_id)
    return job if job is not None and job.user == user and job.api == api else None


def cancel(emulator, job: Job) -> Job:
    """Cancel a pending or running job (its PostgreSQL backend too); 400 once it has ended."""
    with emulator.lock:
        if job.status not in ("pending", "running"):
            raise HttpAnswer(400, {"error": [f"Cannot set status from {job.status} to cancelled"]})
        pid = job.backend_pid if job.status == "running" else None
        _finish(job, "cancelled")
    if pid:
        postgres.cancel_backend(emulator.database_url, pid)
    return job


def work(emulator) -> None:
    """Run queued jobs one at a time, first in first out, as CARTO does per user."""
    while (job_id := emulator.job_queue.get()) is not None:
        with emulator.lock:
            job = emulator.jobs.get(job_id)
            if job is None or job.status != "pending":
                continue
            job.status, job.updated_at = "running", iso_now()
        try:
            _run(emulator, job)
        except Exception as exc:  # a broken job must not stop the worker
            with emulator.lock:
                if job.status == "running":
                    _finish(job, "failed", str(exc))


def _run(emulator, job: Job) -> None:
    def started(pid: int) -> bool:
        with emulator.lock:
            if job.status != "running":  # cancelled while connecting
                return False
            job.backend_pid = pid
            return True

    try:
        postgres.run_job_statements(emulator.database_url, job.query if isinstance(job.query, list) else [job.query],
                                    job.role, started)
    except postgres.DatabaseError as exc:
        with emulator.lock:
            if job.status == "running":
                _finish(job, "failed", postgres.pg_fields(exc).get("M", str(exc)))
        return
    with emulator.lock:
        if job.status == "running":
            _finish(job, "done")


def _forget_expired(emulator) -> None:
    now = time.monotonic()
    for job_id in [j.job_id for j in emulator.jobs.values()
                   if j.finished_at is not None and now - j.finished_at >= emulator.job_ttl]:
        del emulator.jobs[job_id]


def _finish(job: Job, status: str, reason: str | None = None) -> None:
    job.status, job.failed_reason = status, reason
    job.updated_at, job.finished_at = iso_now(), time.monotonic()


def iso_now() -> str:
    """ISO 8601 with milliseconds, as CARTO's job objects carry."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
