import sys

from natkit.cli.main import main

sys.exit(main())
