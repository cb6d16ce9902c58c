from patchcore.apps.cli import main

main()
