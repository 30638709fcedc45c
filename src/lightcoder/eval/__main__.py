from lightcoder.eval.command import main

raise SystemExit(main())
