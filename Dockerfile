# One image for every service, worker and job; the command picks which (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY shared shared
COPY patient_service patient_service
COPY therapist_service therapist_service
COPY matching_service matching_service
COPY communication_service communication_service
COPY geocoding_service geocoding_service
COPY migrations migrations
RUN useradd --system --uid 10001 app
USER app
