import sys

args = sys.argv[1:]
if "--diag" in args:  # the diagnostics' cost (bench/diag.py)
    from forgetting.bench.diag import main

    main([a for a in args if a != "--diag"])
elif "--packed" in args:  # sweep throughput: sequential, packed, processes (bench/packed.py)
    from forgetting.bench.packed import main

    main([a for a in args if a != "--packed"])
elif "--tracking" in args:  # what logger=mlflow|tensorboard costs a run (bench/tracking.py)
    from forgetting.bench.tracking import main

    main([a for a in args if a != "--tracking"])
elif "--scale" in args:  # a sweep's tables at 1k-100k points (bench/scale.py)
    from forgetting.bench.scale import main

    main([a for a in args if a != "--scale"])
elif "--job-folder" in args:  # a sweep job's folder choice (bench/job_folder.py)
    from forgetting.bench.job_folder import main

    main([a for a in args if a != "--job-folder"])
else:  # the training step against baselines and ceilings (bench/steps.py)
    from forgetting.bench.steps import main

    main()
