FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY monitor monitor
COPY simulators simulators
COPY rules rules
COPY schemas schemas
RUN pip install --no-cache-dir .
EXPOSE 9464
CMD ["cardmon", "run"]
