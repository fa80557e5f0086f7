"""The registered methods; importing this package registers all of them (see base.METHODS)."""

from . import clip, hkgr, irra  # noqa: F401
from . import rde  # noqa: F401
from . import ccma  # noqa: F401
from . import ssan  # noqa: F401
from . import cfack  # noqa: F401
