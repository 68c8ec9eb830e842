import sys

from annotator.cli.base import main

sys.exit(main())
