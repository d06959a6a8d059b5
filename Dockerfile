# pitwall_rt: one process serving HTTP/WebSocket on 8081 and UDP on 20777.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pitwall_rt ./pitwall_rt
RUN pip install --no-cache-dir .
COPY config.toml demo_data.json ./
COPY public ./public

ENV HOST=0.0.0.0 DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8081 20777/udp
CMD ["pitwall-rt"]
