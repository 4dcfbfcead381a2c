from curate.pipelines.cli import main

main()
