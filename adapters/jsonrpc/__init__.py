"""The JSON-RPC 2.0 control plane: every use case as a method over HTTP, described by OpenRPC."""
