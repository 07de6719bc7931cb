import sys

from lbsim.entry import main

sys.exit(main())
