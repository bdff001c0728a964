"""Plain-Python decisions of the operator: no SDK imports, only adapters' interfaces."""
