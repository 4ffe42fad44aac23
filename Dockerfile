# Slim runtime image for the edge: Detector over OpenVINO and ONNX Runtime. No torch, no Ultralytics.
# Build: docker build -t edge-mlla .   Run: docker run --rm -v $PWD/models:/models edge-mlla predict /models/m.xml img.jpg
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY edge_mlla ./edge_mlla
COPY runtimes ./runtimes
COPY quantize ./quantize
# opencv-python-headless comes with the core dependencies; the extras add only the runtimes.
RUN pip install ".[openvino,onnx]" && python -c "import edge_mlla, sys; assert 'torch' not in sys.modules"
ENTRYPOINT ["edge-mlla"]
