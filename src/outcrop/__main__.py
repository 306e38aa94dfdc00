from outcrop.cli import main

raise SystemExit(main())
