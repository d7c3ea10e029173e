# syntax=docker/dockerfile:1
# Vetline engine. Build: docker build -t vetline . ; run: docker run -p 3000:3000 --env-file .env vetline

FROM node:20-bookworm-slim AS deps
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
# WORKERS=auto: one engine process per core (docs/operations.md "Workers"); STREAM_TOKEN_SECRET comes with the env file.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000 WORKERS=auto
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY src ./src
COPY machines ./machines
COPY config ./config
COPY visualizations ./visualizations
RUN mkdir -p /app/data/journals && chown -R node:node /app/data && chmod 700 /app/data /app/data/journals
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/twilio/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "--import", "tsx", "src/main.ts"]
