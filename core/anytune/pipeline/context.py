"""What the stages of a job share in one process: the registry, the plugins, the data checks remembered
between stages, and the backends' pacing hints. The in-process Client holds one `Pipeline`; a comparison
across providers and its second process make their own."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from anytune.hookspecs import Backend
from anytune.jobs import Event, JobStatus
from anytune.pipeline.bounded import Bounded
from anytune.pipeline.datachecks import DataChecks
from anytune.plugins import PluginManager, get_plugin_manager
from anytune.registry import Registry


def _anything(_paths: Sequence[str]) -> None:
    return None


class Pipeline:
    """The shared state of the stages (each stage is a function taking it first)."""

    def __init__(self, registry: Registry | None = None, plugins: PluginManager | None = None) -> None:
        self._registry = registry
        self._plugins = plugins
        self.data = DataChecks()
        self.poll_after: Bounded[str, float] = Bounded(4096)  # the backends' pacing hints, by job
        # the files a job names may be read (raises if not): everything, unless the owner of this pipeline
        # says otherwise (the service: only what is under ANYTUNE_DATA_ROOT, whatever route brought the path)
        self.may_read: Callable[[Sequence[str]], None] = _anything
        # record a checked job and leave its submit to a worker (`anytune server --submit-in-workers`): the
        # worker that submits a local job is the machine that trains it
        self.defer_submit = False

    def in_project(self, project: str) -> Pipeline:
        """The same stages on the same registry and plugins, seen from `project` (what the owner of this
        pipeline allows, it allows there too)."""
        other = Pipeline(self.registry.in_project(project), self.plugins)
        other.may_read, other.defer_submit = self.may_read, self.defer_submit
        return other

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry()
        return self._registry

    @property
    def plugins(self) -> PluginManager:
        if self._plugins is None:
            self._plugins = get_plugin_manager()
        return self._plugins

    def backend(self, name: str) -> Backend:
        return self.plugins.get_backend(name)

    def note(self, job_id: str, events: list[Event], status: JobStatus = JobStatus.PENDING) -> list[Event]:
        """Record events on a job and tell the plugins' `job_event` hooks, in order."""
        stored = self.registry.add_events(job_id, events)
        self.tell(job_id, stored, status)
        return stored

    def tell(self, job_id: str, events: list[Event], status: JobStatus) -> None:
        for event in events:
            self.plugins.hook.job_event(job_id=job_id, status=status, event=event)

    def pace(self, job_id: str) -> float:
        """Seconds to the next poll: `$ANYTUNE_POLL_INTERVAL` if set (rehearsals against an emulator), else
        the backend's hint for the job's state, else one second."""
        override = os.environ.get("ANYTUNE_POLL_INTERVAL")
        if override:
            return float(override)
        return self.poll_after.get(job_id, 1.0)
