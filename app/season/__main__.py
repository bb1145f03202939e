import sys

from app.season.cli import main

sys.exit(main())
