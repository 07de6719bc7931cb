import sys

from lbsim.cli import main

sys.exit(main())
