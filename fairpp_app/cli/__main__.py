"""``python -m fairpp_app.cli``: the same as the ``fairpp`` command."""

import sys

from fairpp_app.cli import main

sys.exit(main())
