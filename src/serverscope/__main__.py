from commands.entry import main

raise SystemExit(main())
