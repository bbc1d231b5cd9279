# Two minimal images, one per binary, built from this repository:
#
#   docker build --target operator -t listacompra-operator .   (the default, last stage)
#   docker build --target api      -t listacompra-api .
#
# The build stage runs e2e/scripts/build-static.sh, the script CI runs too (e2e/tests/
# static_image.rs), so the images hold exactly the binaries the tests exercised: static musl
# executables. The final stages are FROM scratch: no shell, no package manager, no libc; only
# the binary, CA certificates (TLS to Prometheus, Perplexity, the Kubernetes API) and a
# passwd entry for the non-root user 65532 they run as. They work with
# readOnlyRootFilesystem: true and the Pod Security "restricted" profile.

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Writes /out/listacompra-operator, /out/listacompra-api and /out/etc/.
RUN bash e2e/scripts/build-static.sh /out

FROM scratch AS api
COPY --from=build /out/etc/ /etc/
COPY --from=build /out/listacompra-api /usr/local/bin/listacompra-api
# The operator's migration Job runs `listacompra-api migrate` by name.
ENV PATH=/usr/local/bin
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/listacompra-api"]
CMD ["serve"]

FROM scratch AS operator
COPY --from=build /out/etc/ /etc/
COPY --from=build /out/listacompra-operator /usr/local/bin/listacompra-operator
ENV PATH=/usr/local/bin
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/listacompra-operator"]
