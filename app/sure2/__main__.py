import sys

from app.sure2.cli import main

sys.exit(main())
