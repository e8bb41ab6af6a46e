from bench.command_line import refuse_mistakes
from bench.entry import main

refuse_mistakes()
main()
