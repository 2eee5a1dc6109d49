"""Persistence: SQLAlchemy 2 async models, tenant-scoped repositories, migrations.

```python
from agentguild.store import Database
db = Database(settings.database)
await db.start()
async with db.repos(principal) as repos:
    conversation = await repos.conversations.create(principal.user_id, agent.id, "Hi")
```

`SqlTaskStore` (planned tasks, `agentguild.tasks`) is imported on first use: it needs the
tasks package, which the rest of the store does not.
"""

from typing import TYPE_CHECKING, Any

from .db import Database
from .errors import (
    ConflictError,
    InvalidCursorError,
    NotFoundError,
    NotRunOwnerError,
    NotTaskOwnerError,
    StoreError,
)
from .migrate import current_revision, head_revision, schema_diff, upgrade
from .models import (
    AgentRecord,
    AgentVersion,
    ApiKey,
    Base,
    Conversation,
    MessageRecord,
    Run,
    SubtaskRecord,
    TaskRecord,
    Tenant,
    ToolCallRecord,
    UsageRecord,
    User,
)
from .repositories import (
    FINISHED_STATUSES,
    RUN_STATUSES,
    RunMode,
    RunStatus,
    SystemRepos,
    TenantRepos,
    to_message,
)
from .usage_writer import UsageEntry, UsageWriter
from .views import AgentVersionView, AgentView, Page, UsageTotals

if TYPE_CHECKING:
    from .task_store import SqlTaskStore

__all__ = [
    "FINISHED_STATUSES",
    "RUN_STATUSES",
    "AgentRecord",
    "AgentVersion",
    "AgentVersionView",
    "AgentView",
    "ApiKey",
    "Base",
    "ConflictError",
    "Conversation",
    "Database",
    "InvalidCursorError",
    "MessageRecord",
    "NotFoundError",
    "NotRunOwnerError",
    "NotTaskOwnerError",
    "Page",
    "Run",
    "RunMode",
    "RunStatus",
    "SqlTaskStore",
    "StoreError",
    "SubtaskRecord",
    "SystemRepos",
    "TaskRecord",
    "Tenant",
    "TenantRepos",
    "ToolCallRecord",
    "UsageEntry",
    "UsageRecord",
    "UsageTotals",
    "UsageWriter",
    "User",
    "current_revision",
    "head_revision",
    "schema_diff",
    "to_message",
    "upgrade",
]


def __getattr__(name: str) -> Any:
    if name == "SqlTaskStore":
        from .task_store import SqlTaskStore

        return SqlTaskStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
