import sys
import edge_mlla.export.blocks as B
B.split_cv1 = lambda model: 0
from edge_mlla.export import export
for fmt in ("openvino", "onnx"):
    print(export(sys.argv[1], format=fmt, output=sys.argv[2]))
