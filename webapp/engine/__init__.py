"""Engine workers: processes that own per-user Memory objects, fed by serializable commands."""

from webapp.engine.pool import EnginePool
from webapp.engine.protocol import EngineError
from webapp.engine.worker import WorkerSettings

__all__ = ["EnginePool", "EngineError", "WorkerSettings"]
