# syntax=docker/dockerfile:1
# Worker images of clasp-ingest, built once by `docker compose build` (docker-compose.yml):
#   cpu: slim Python + ffmpeg + the package, every version pinned by constraints.txt;
#   gpu: a CUDA PyTorch image + ffmpeg + the package, keeping the image's own torch and
#        torchvision (docker/gpu-constraints.sh pins them and drops the CPU venv's CUDA wheels).
# The project is tested with torch 2.14.1 (constraints.txt; the package accepts torch>=2.5), so
# the GPU base image carries torch 2.14.1 (any local build label, e.g. +cu130); pick another CUDA
# flavour with --build-arg TORCH_IMAGE=...
# Extras: s3/gcs sources, the Dask runner, and `reference` (librosa + matplotlib: the spectrogram
# branch of clasp-official). Model weights are not baked in: clasp-mini's come with the package,
# clasp-official's are fetched from Hugging Face on first use into the model-cache volume (or
# read from CLASP_MODEL_DIR).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG TORCH_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
ARG EXTRAS=s3,gcs,dask,reference

FROM ${PYTHON_IMAGE} AS cpu
ARG EXTRAS
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DO_NOT_TRACK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/clasp-ingest
COPY pyproject.toml README.md constraints.txt prefect.yaml ./
COPY clasp_ingest ./clasp_ingest
COPY flows ./flows
COPY connectors ./connectors
COPY retriever ./retriever
# editable: flow runs start in this folder (prefect.yaml's pull step), where ./clasp_ingest would
# shadow a plain install and lacks connectors/, flows/ and retriever/ (mapped into it on install)
RUN pip install -c constraints.txt -e ".[${EXTRAS}]" && pip check
CMD ["prefect", "worker", "start", "--pool", "clasp-cpu", "--type", "process"]

FROM ${TORCH_IMAGE} AS gpu
ARG EXTRAS
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DO_NOT_TRACK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/clasp-ingest
COPY pyproject.toml README.md constraints.txt prefect.yaml ./
COPY docker/gpu-constraints.sh /usr/local/bin/gpu-constraints.sh
COPY clasp_ingest ./clasp_ingest
COPY flows ./flows
COPY connectors ./connectors
COPY retriever ./retriever
RUN sh /usr/local/bin/gpu-constraints.sh constraints.txt > /tmp/gpu-constraints.txt \
    && before="$(python -c 'import torch; print(torch.__version__)')" \
    && pip install -c /tmp/gpu-constraints.txt -e ".[${EXTRAS}]" \
    && after="$(python -c 'import torch; print(torch.__version__, torch.version.cuda)')" \
    && echo "torch before: ${before}; after: ${after}" \
    && test "${after%% *}" = "${before}"
CMD ["prefect", "worker", "start", "--pool", "clasp-gpu", "--type", "process"]
