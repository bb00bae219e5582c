from registry.models.apikey import *  # noqa: F403
from registry.models.config import *  # noqa: F403
from registry.models.ratepolicy import *  # noqa: F403
from registry.models.service import *  # noqa: F403
