from edge_mlla.cli import main

raise SystemExit(main())
