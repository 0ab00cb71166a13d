from alignax.serve.cli import main

main()
