from meshc.cli.main import main

main()
