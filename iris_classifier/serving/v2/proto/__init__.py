"""Generated from open_inference_grpc.proto (KServe's Open Inference Protocol, gRPC) by `make grpc-stubs`; never edited."""
