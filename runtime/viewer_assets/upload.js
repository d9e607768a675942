// The `recon-cli serve` upload page: drop or choose a picture, POST it to /reconstruct, show the answer
// as a card (the same one the gallery uses) and the coloured mesh in the 3D view.
(function () {
  "use strict";
  const form = document.getElementById("upload");
  const input = document.getElementById("image");
  const status = document.getElementById("status");
  let gallery = null;

  async function send(file) {
    status.textContent = "reconstructing " + file.name + "...";
    const body = new FormData();
    body.append("image", file, file.name);
    let answer;
    try {
      const response = await fetch("reconstruct?mesh=inline", { method: "POST", body });
      answer = await response.json();
      if (!response.ok && !answer.error) answer.error = "HTTP " + response.status;
    } catch (error) {
      status.textContent = "failed: " + error;
      return;
    }
    status.textContent = answer.status === "ok" ? "done in " + answer.timings_ms.total.toFixed(0) + " ms" : "failed";
    const mesh = answer.mesh || {};
    const item = {
      name: file.name, status: answer.status, error: answer.error, confidence: answer.confidence,
      numbers: { volume: answer.volume, vertices: answer.vertices, faces: answer.faces },
      view: answer.view, glb: mesh.base64 || null, files: mesh.urls || {},
    };
    gallery = window.ReconViewer.renderGallery({ items: [item] }, document.body, gallery && gallery.viewer);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.files.length) send(input.files[0]);
  });
  input.addEventListener("change", () => { if (input.files.length) send(input.files[0]); });
  form.addEventListener("dragover", (event) => { event.preventDefault(); form.classList.add("over"); });
  form.addEventListener("dragleave", () => form.classList.remove("over"));
  form.addEventListener("drop", (event) => {
    event.preventDefault();
    form.classList.remove("over");
    if (event.dataTransfer.files.length) send(event.dataTransfer.files[0]);
  });
})();
