"""The floor of ``POST /jobs``: the same FastAPI route, body model and 202 reply as ``app.api``,
with no Redis work (no job hash, no enqueue). ``bench/app_load.py`` serves it under uvicorn beside
the real API, so the HTTP stack's own cost is measured in the same run."""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from app.api import JobRequest

app = FastAPI(title="zachot POST /jobs floor")


@app.post("/jobs", status_code=202)
async def create_job(body: JobRequest) -> JSONResponse:
    """Validate the body as the API does and answer 202 with a new id; nothing is stored."""
    job_id = uuid.uuid4().hex
    url = f"/jobs/{job_id}"
    return JSONResponse(status_code=202, headers={"Location": url},
                        content={"id": job_id, "status": "queued", "events_url": f"{url}/events", "status_url": url})
