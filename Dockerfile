# pitwall_rt: one process serving HTTP/WebSocket on 8081 and UDP on 20777.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY pitwall_rt ./pitwall_rt
# gcc only to compile the C extensions (see setup.py), then removed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install --no-cache-dir . \
 && apt-get purge -y gcc libc6-dev && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*
COPY config.toml demo_data.json ./
COPY public ./public

ENV HOST=0.0.0.0 DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8081 20777/udp
CMD ["pitwall-rt"]
