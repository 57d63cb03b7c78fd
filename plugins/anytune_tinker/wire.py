"""The protobuf half of Tinker's wire, for the emulator: a `ForwardBackwardRequest` read, and a
`ForwardBackwardOutput` and a `SampleResponse` written, with the message classes the SDK itself ships
(`tinker.proto.tinker_public_pb2`), so the emulator reads exactly what the SDK writes."""

from __future__ import annotations

from typing import Any

import numpy as np

_NUMPY = {"float32": np.float32, "int64": np.int64, "int32": np.int32}


def _pb() -> Any:
    from tinker.proto import tinker_public_pb2

    return tinker_public_pb2


def _tensor(msg: Any) -> list[float] | list[int]:
    pb = _pb()
    dtype = {pb.DTYPE_FLOAT32: np.float32, pb.DTYPE_INT64: np.int64, pb.DTYPE_INT32: np.int32}[msg.dtype]
    if msg.HasField("sparse_csr"):
        values = np.frombuffer(msg.sparse_csr.values, dtype=dtype)
        crow = np.frombuffer(msg.sparse_csr.crow_indices, dtype=np.int64)
        cols = np.frombuffer(msg.sparse_csr.col_indices, dtype=np.int64)
        shape = list(msg.shape)
        dense = np.zeros(shape, dtype=dtype).reshape(shape[0], -1)
        for row in range(len(crow) - 1):
            for k in range(int(crow[row]), int(crow[row + 1])):
                dense[row, int(cols[k])] = values[k]
        return dense.reshape(-1).tolist()
    return np.frombuffer(msg.dense, dtype=dtype).tolist()


def decode_forward_backward(raw: bytes) -> dict[str, Any]:
    """The request as plain data: model id, seq id, loss function, and each datum's tokens and inputs."""
    msg = _pb().ForwardBackwardRequest()
    msg.ParseFromString(raw)
    data = []
    for datum in msg.data:
        chunks = [
            np.frombuffer(chunk.encoded_text.tokens, dtype=np.int32).tolist()
            for chunk in datum.model_input
            if chunk.HasField("encoded_text")
        ]
        inputs = {name: _tensor(tensor) for name, tensor in datum.loss_fn_inputs.items()}
        data.append({"model_input": chunks, "loss_fn_inputs": inputs})
    return {
        "model_id": msg.model_id,
        "seq_id": msg.seq_id,
        "loss_fn": msg.loss_fn,
        "forward_only": bool(msg.forward_only),
        "data": data,
    }


def encode_forward_backward_output(outputs: list[dict[str, list[float]]], metrics: dict[str, float]) -> bytes:
    """One batched ArrayRecord (each field's per-datum arrays, concatenated, with byte offsets)."""
    pb = _pb()
    out = pb.ForwardBackwardOutput(loss_fn_output_type="tinker:ArrayRecord", metrics=metrics)
    if outputs:
        record = out.loss_fn_outputs.add(type_tag="ArrayRecord", num_datums=len(outputs))
        for name in outputs[0]:
            arrays = [np.asarray(o[name], dtype=np.float32) for o in outputs]
            offsets = np.cumsum([0] + [a.nbytes for a in arrays]).astype(np.int64)
            record.fields[name].CopyFrom(
                pb.BatchedTensor(
                    data=b"".join(a.tobytes() for a in arrays),
                    offsets=offsets.tobytes(),
                    dtype=pb.DTYPE_FLOAT32,
                )
            )
    return bytes(out.SerializeToString())


def encode_sample_response(sequences: list[tuple[list[int], list[float], str]]) -> bytes:
    pb = _pb()
    out = pb.SampleResponse()
    for tokens, logprobs, reason in sequences:
        out.sequences.add(
            stop_reason=pb.STOP_REASON_STOP if reason == "stop" else pb.STOP_REASON_LENGTH,
            tokens=np.asarray(tokens, dtype=np.int32).tobytes(),
            logprobs=np.asarray(logprobs, dtype=np.float32).tobytes(),
        )
    return bytes(out.SerializeToString())
