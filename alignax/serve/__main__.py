from alignax.compile_cache import enable_compilation_cache
from alignax.serve.cli import main

enable_compilation_cache()
main()
