"""Model versions, their aliases and evaluations: the registry's half that results go into.

A mixin of `Registry` (which brings the session and the project): a version is immutable (registering again
makes a new one; only aliases move), and names, versions and aliases are a project's own, so two teams may
both have a `support-bot@production`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anytune.errors import NotFoundError, UsageError
from anytune.jobs import ModelArtifact, utcnow
from anytune.registry.records import EvaluationRecord, ModelVersion
from anytune.registry.tables import DEFAULT_PROJECT, EvaluationRow, ModelAliasRow, ModelRow


class ModelStore:
    """What `Registry` knows about models and evaluations, in its project (all of them: `project` None)."""

    project: str | None

    def session(self) -> Session:  # pragma: no cover - Registry's
        raise NotImplementedError

    def mine(self, table: Any) -> list[ColumnElement[bool]]:
        """The condition that keeps a query to this registry's project (none: every project)."""
        return [] if self.project is None else [table.project == self.project]

    @property
    def owner(self) -> str:
        """The project new records go into."""
        return self.project or DEFAULT_PROJECT

    # ------------------------------------------------------------------------------------------- models

    def register_model(
        self,
        name: str,
        artifact: ModelArtifact,
        *,
        job_id: str | None = None,
        dataset_fingerprint: str | None = None,
        spec: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        cost: dict[str, Any] | None = None,
        base_model_retires: datetime | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Add a new immutable version of `name` (1, 2, 3...)."""
        for _attempt in range(5):
            try:
                with self.session() as s, s.begin():
                    row = self._insert_model(
                        s,
                        name,
                        artifact,
                        project=self.owner,
                        job_id=job_id,
                        dataset_fingerprint=dataset_fingerprint,
                        spec=spec,
                        metrics=metrics,
                        cost=cost,
                        base_model_retires=base_model_retires,
                        description=description,
                    )
                return self._model(row, [])
            except IntegrityError:  # another process took this version number first: take the next
                continue
        raise UsageError(f"could not register a new version of {name!r}: too many concurrent writers")

    @staticmethod
    def _insert_model(
        s: Session, name: str, artifact: ModelArtifact, *, project: str, **lineage: Any
    ) -> ModelRow:
        last = (
            s.scalar(
                select(func.max(ModelRow.version)).where(ModelRow.project == project, ModelRow.name == name)
            )
            or 0
        )
        row = ModelRow(
            project=project,
            name=name,
            version=last + 1,
            provider=artifact.provider,
            model_id=artifact.model_id,
            kind=artifact.kind,
            base_model=artifact.base_model,
            adapter_type=artifact.adapter_type,
            artifact=artifact.model_dump(mode="json"),
            created_at=utcnow(),
            **{**lineage, "metrics": lineage.get("metrics") or {}},
        )
        s.add(row)
        s.flush()
        return row

    def _model(self, row: ModelRow, aliases: list[str]) -> ModelVersion:
        data = {c: getattr(row, c) for c in ModelVersion.model_fields if c != "aliases" and hasattr(row, c)}
        return ModelVersion(**data, aliases=sorted(aliases))

    @staticmethod
    def _aliases(s: Session, row: ModelRow) -> list[str]:
        return list(
            s.scalars(
                select(ModelAliasRow.alias).where(
                    ModelAliasRow.project == row.project,
                    ModelAliasRow.name == row.name,
                    ModelAliasRow.version == row.version,
                )
            )
        )

    def get_model(self, ref: str) -> ModelVersion:
        """`name` (newest version), `name@3`, or `name@alias`."""
        name, _, selector = ref.partition("@")
        with self.session() as s:
            q = select(ModelRow).where(ModelRow.name == name, *self.mine(ModelRow))
            if not selector or selector == "latest":
                row = s.scalars(q.order_by(ModelRow.version.desc()).limit(1)).first()
            elif selector.isdigit():
                row = s.scalars(q.where(ModelRow.version == int(selector))).first()
            else:
                version = s.scalar(
                    select(ModelAliasRow.version).where(
                        ModelAliasRow.name == name, ModelAliasRow.alias == selector, *self.mine(ModelAliasRow)
                    )
                )
                row = s.scalars(q.where(ModelRow.version == version)).first() if version else None
            if row is None:
                raise NotFoundError(
                    f"no model {ref!r}", hint="`anytune models list` shows the registered models"
                )
            return self._model(row, self._aliases(s, row))

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        q = select(ModelRow).where(*self.mine(ModelRow)).order_by(ModelRow.name, ModelRow.version.desc())
        if name:
            q = q.where(ModelRow.name == name)
        with self.session() as s:
            aliases: dict[tuple[str, str, int], list[str]] = {}
            for a in s.scalars(select(ModelAliasRow).where(*self.mine(ModelAliasRow))):
                aliases.setdefault((a.project, a.name, a.version), []).append(a.alias)
            return [self._model(r, aliases.get((r.project, r.name, r.version), [])) for r in s.scalars(q)]

    def models_for_job(self, job_id: str) -> list[ModelVersion]:
        with self.session() as s:
            rows = s.scalars(
                select(ModelRow)
                .where(ModelRow.job_id == job_id, *self.mine(ModelRow))
                .order_by(ModelRow.version)
            ).all()
            return [self._model(r, self._aliases(s, r)) for r in rows]

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        if alias.isdigit() or alias == "latest" or not alias or len(alias) > 100 or "\x00" in alias:
            raise UsageError(
                f"{alias[:100]!r} cannot be an alias (a word of at most 100 characters)",
                hint="use a word such as production or candidate",
            )
        with self.session() as s, s.begin():
            exists = s.scalar(
                select(ModelRow.id).where(
                    ModelRow.project == self.owner, ModelRow.name == name, ModelRow.version == version
                )
            )
            if exists is None:
                raise NotFoundError(f"no model {name}@{version}")
            row = s.get(ModelAliasRow, (self.owner, name, alias))
            if row is None:
                s.add(
                    ModelAliasRow(
                        project=self.owner, name=name, alias=alias, version=version, updated_at=utcnow()
                    )
                )
            else:
                row.version, row.updated_at = version, utcnow()
        return self.get_model(f"{name}@{version}")

    def remove_alias(self, name: str, alias: str) -> None:
        """Take an alias off; NotFoundError if the model has no such alias (in this project)."""
        with self.session() as s, s.begin():
            gone = s.execute(
                delete(ModelAliasRow).where(
                    ModelAliasRow.project == self.owner,
                    ModelAliasRow.name == name,
                    ModelAliasRow.alias == alias,
                )
            ).rowcount
        if not gone:
            raise NotFoundError(
                f"model {name!r} has no alias {alias!r}", hint="`anytune models list` shows them"
            )

    # -------------------------------------------------------------------------------------- evaluations

    def add_evaluation(
        self,
        *,
        subject: str,
        provider: str,
        model_id: str,
        dataset_path: str,
        dataset_fingerprint: str,
        metrics: dict[str, Any],
        n: int,
        job_id: str | None = None,
        model_name: str | None = None,
        model_version: int | None = None,
        samples: dict[str, Any] | None = None,
    ) -> EvaluationRecord:
        row = EvaluationRow(
            project=self.owner,
            job_id=job_id,
            model_name=model_name,
            model_version=model_version,
            subject=subject,
            provider=provider,
            model_id=model_id,
            dataset_path=dataset_path,
            dataset_fingerprint=dataset_fingerprint,
            metrics=metrics,
            n=n,
            samples=samples,
            created_at=utcnow(),
        )
        with self.session() as s, s.begin():
            s.add(row)
        return EvaluationRecord.model_validate(row, from_attributes=True)

    def evaluations(
        self,
        *,
        job_id: str | None = None,
        model_name: str | None = None,
        model_version: int | None = None,
        dataset_fingerprint: str | None = None,
        subject: str | None = None,
    ) -> list[EvaluationRecord]:
        """Stored evaluations, oldest first, filtered by any of the arguments."""
        q = select(EvaluationRow).where(*self.mine(EvaluationRow)).order_by(EvaluationRow.id)
        if job_id:
            q = q.where(EvaluationRow.job_id == job_id)
        if model_name:
            q = q.where(EvaluationRow.model_name == model_name)
        if model_version is not None:
            q = q.where(EvaluationRow.model_version == model_version)
        if dataset_fingerprint:
            q = q.where(EvaluationRow.dataset_fingerprint == dataset_fingerprint)
        if subject:
            q = q.where(EvaluationRow.subject == subject)
        with self.session() as s:
            return [EvaluationRecord.model_validate(r, from_attributes=True) for r in s.scalars(q)]
