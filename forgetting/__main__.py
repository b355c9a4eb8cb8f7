from forgetting.run import cli

cli()
