"""``python -m btd_core.cli ...`` (and ``accelerate launch -m btd_core.cli train ...``)."""

import sys

from btd_core.cli.main import main

sys.exit(main())
