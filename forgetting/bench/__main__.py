import sys

if "--diag" in sys.argv[1:]:  # the diagnostics' cost (bench/diag.py)
    from forgetting.bench.diag import main

    main([a for a in sys.argv[1:] if a != "--diag"])
else:
    from forgetting.bench.steps import main

    main()
