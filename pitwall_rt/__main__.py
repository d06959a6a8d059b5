"""``python -m pitwall_rt`` is the same as the ``pitwall-rt`` command."""

from .cli import main

raise SystemExit(main())
