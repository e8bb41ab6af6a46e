from bench.run.command_line import refuse_mistakes
from bench.run.entry import main
from bench.run.plugin_help import show_plugin_help

show_plugin_help()
refuse_mistakes()
main()
