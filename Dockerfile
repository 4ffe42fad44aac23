# Slim edge image: Detector over OpenVINO and ONNX Runtime, tracking and line counting with supervision,
# the camera sample and the bundled model as OpenVINO IR (f32 and INT8). No torch and no Ultralytics in it:
# a build stage exports and quantizes the bundled checkpoint, and only the IR files are copied over.
#
# Build:
#   docker build -t edge-mlla .
# Default: the camera sample on the bundled BCCD clip (INT8 IR, tracking, a counting line); the annotated
# video lands in ./out (mounted at /out, written as a non-root user: make ./out writable for uid 10001,
# or add --user "$(id -u):$(id -g)"):
#   mkdir -p out && docker run --rm -v "$PWD/out:/out" edge-mlla
# A webcam (V4L2 device passed through), counting crossings of a vertical line:
#   docker run --rm --device /dev/video0 -v "$PWD/out:/out" edge-mlla \
#     python samples/camera.py --model /models/int8/yolo11n-mlla-bccd_int8.xml --source 0 \
#       --track --line 320,0,320,480 --save /out/camera.mp4
# An RTSP camera and your own model:
#   docker run --rm -v "$PWD/models:/models/own:ro" -v "$PWD/out:/out" edge-mlla \
#     python samples/camera.py --model /models/own/best.xml --source rtsp://user:pass@cam/stream --save /out/cam.mp4
# The CLI: docker run --rm -v "$PWD:/data" edge-mlla edge-mlla predict /models/f32/yolo11n-mlla-bccd.xml /data/img.jpg
# `docker stop` sends SIGTERM: the sample finalizes the video and prints its summary, as on Ctrl-C.

FROM python:3.11-slim AS models
# Where torch comes from in this build stage (it never reaches the final image). Default: PyTorch's CPU wheels,
# ~200 MB of torch, the stage ~1.5 GB. `--build-arg TORCH_INDEX=https://pypi.org/simple` takes PyPI's build,
# which brings its CUDA libraries: ~7 GB for this stage, same final image (make image picks it when PyTorch's
# index is not reachable).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY edge_mlla ./edge_mlla
COPY runtimes ./runtimes
COPY quantize ./quantize
# Ultralytics pulls the GUI OpenCV, which needs libGL: swap in the headless build, as the Makefile does.
# The model is exported at the size it was trained at (416): INT8 calibration at another size costs accuracy.
RUN pip install --index-url "$TORCH_INDEX" "torch>=2.2,<=2.14.1" "torchvision>=0.17,<=0.29.1" \
 && pip install "./[train,openvino,quant]" \
 && pip uninstall -y opencv-python opencv-python-headless \
 && pip install "opencv-python-headless>=4.8" \
 && edge-mlla export edge_mlla/weights/yolo11n-mlla-bccd.pt --format openvino --output /tmp/ir \
 && edge-mlla quantize /tmp/ir/yolo11n-mlla-bccd_openvino_model/yolo11n-mlla-bccd.xml --calib bccd \
      --backend openvino --subset-size 100 --latency-runs 0 \
 && mkdir -p /models \
 && mv /tmp/ir/yolo11n-mlla-bccd_openvino_model /models/f32 \
 && mv /tmp/ir/yolo11n-mlla-bccd_int8_openvino_model /models/int8

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY edge_mlla ./edge_mlla
COPY runtimes ./runtimes
COPY quantize ./quantize
# Runtime extras only (opencv-python-headless comes with the core). Current supervision (0.31+) keeps ByteTrack
# in the `trackers` package, whose wheel asks for the GUI OpenCV: it goes in without dependencies (what it needs
# comes with supervision, and rich), so the image keeps the headless build.
RUN pip install "./[openvino,onnx,track]" "rich>=13" \
 && pip install --no-deps "trackers>=2.5" \
 && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None or u.find_spec('ultralytics') is not None)"
COPY samples ./samples
COPY --from=models /models /models
RUN useradd --create-home --uid 10001 edge && mkdir /out && chown edge /out
USER 10001
CMD ["python", "samples/camera.py", "--model", "/models/int8/yolo11n-mlla-bccd_int8.xml", \
     "--source", "/app/edge_mlla/data/clips/bccd_pan.mp4", "--track", "--line", "320,0,320,480", \
     "--hint", "throughput", "--inflight", "3", "--save", "/out/bccd_pan_annotated.mp4"]
