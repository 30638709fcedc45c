from lightcoder.cli import main

raise SystemExit(main())
