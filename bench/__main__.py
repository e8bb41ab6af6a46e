from bench.command_line import refuse_mistakes
from bench.entry import main
from bench.plugin_help import show_plugin_help

show_plugin_help()
refuse_mistakes()
main()
