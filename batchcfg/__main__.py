from batchcfg.cli import main

raise SystemExit(main())
