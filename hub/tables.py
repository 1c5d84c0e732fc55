"""Imports every feature's models so ``Base.metadata`` knows every table
(Alembic's autogenerate and the drift test read it)."""

from hub import idempotency as _idempotency  # noqa: F401
from hub.audit import models as _audit  # noqa: F401
from hub.auth import models as _auth  # noqa: F401
from hub.backups import models as _backups  # noqa: F401
from hub.broadcasts import models as _broadcasts  # noqa: F401
from hub.calendar import models as _calendar  # noqa: F401
from hub.contacts import models as _contacts  # noqa: F401
from hub.db import Base
from hub.events import models as _events  # noqa: F401
from hub.messaging import models as _messaging  # noqa: F401
from hub.templates import models as _templates  # noqa: F401
from hub.webhooks import models as _webhooks  # noqa: F401
from hub.whatsapp import models as _whatsapp  # noqa: F401
from tenants import models as _tenants  # noqa: F401

metadata = Base.metadata
