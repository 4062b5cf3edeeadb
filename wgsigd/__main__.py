import sys

from wgsigd.cli import main

sys.exit(main())
