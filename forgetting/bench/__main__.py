from forgetting.bench.steps import main

main()
