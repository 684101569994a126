"""Background jobs: work that does not fit in one request (a long video's scan, an archive
backfill, retro-matching new bank entries against past uploads), kept as rows of the job table
(:mod:`dignity.jobs.models`, :class:`~dignity.jobs.service.JobService`) and run by a task engine:
Celery with a broker where one is configured, or the embedded runner a single machine starts
itself. The table, not the broker, is the truth about a job.
"""

from dignity.jobs.service import JobConflict, JobInfo, JobNotFound, JobRefused, JobService

__all__ = ["JobConflict", "JobInfo", "JobNotFound", "JobRefused", "JobService"]
