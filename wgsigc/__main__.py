import sys

from wgsigc.cli import main

sys.exit(main())
