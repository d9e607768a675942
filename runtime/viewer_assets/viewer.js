// The recon 3D viewer: one WebGL canvas (orbit, zoom, pan) showing a GLB mesh with its vertex colours,
// and the gallery of results around it. A classic script over the vendored three.js bundle (global
// RECON3D), so the page works opened from disk with no network; meshes come embedded as base64.
(function () {
  "use strict";
  const T = window.RECON3D;

  function base64ToBuffer(text) {
    const bytes = atob(text);
    const out = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) out[i] = bytes.charCodeAt(i);
    return out.buffer;
  }

  // Vertex colours are the photo's sRGB pixel values; three.js expects linear ones (glTF's COLOR_0),
  // so convert, and the mesh shows the colours of the picture rather than washed-out ones.
  function srgbToLinear(attribute) {
    const c = new T.Color();
    for (let i = 0; i < attribute.count; i++) {
      c.setRGB(attribute.getX(i), attribute.getY(i), attribute.getZ(i), T.SRGBColorSpace);
      attribute.setXYZ(i, c.r, c.g, c.b);
    }
    attribute.needsUpdate = true;
  }

  function createViewer(canvas) {
    const renderer = new T.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
    renderer.setPixelRatio(window.devicePixelRatio || 1);
    const scene = new T.Scene();
    scene.background = new T.Color(0xf4f5f7);
    scene.add(new T.HemisphereLight(0xffffff, 0x9a9a9a, 2.4));
    const camera = new T.PerspectiveCamera(35, 1, 0.01, 100);
    const headlight = new T.DirectionalLight(0xffffff, 0.9);
    camera.add(headlight);
    scene.add(camera);
    const controls = new T.OrbitControls(camera, canvas);
    controls.enableDamping = false;
    let current = null;

    function render() { renderer.render(scene, camera); }
    function resize() {
      const width = canvas.clientWidth || 480, height = canvas.clientHeight || 360;
      renderer.setSize(width, height, false);
      camera.aspect = width / height;
      camera.updateProjectionMatrix();
      render();
    }
    controls.addEventListener("change", render);
    window.addEventListener("resize", resize);

    // view: {azimuth, elevation} in degrees (recon's orbit camera: the photo's viewpoint), or null.
    function show(buffer, view) {
      return new Promise((resolve, reject) => {
        new T.GLTFLoader().parse(buffer, "", (gltf) => {
          if (current) scene.remove(current);
          current = gltf.scene;
          current.traverse((node) => {
            if (!node.isMesh) return;
            const colors = node.geometry.getAttribute("color");
            if (colors) srgbToLinear(colors);
            node.geometry.computeVertexNormals();
            node.material = new T.MeshLambertMaterial({ vertexColors: Boolean(colors), color: colors ? 0xffffff : 0xcfcfcf });
          });
          scene.add(current);
          const box = new T.Box3().setFromObject(current);
          const centre = box.getCenter(new T.Vector3());
          const radius = box.getSize(new T.Vector3()).length() / 2 || 1;
          const az = ((view && view.azimuth) || 30) * Math.PI / 180;
          const el = ((view && view.elevation) || 20) * Math.PI / 180;
          const distance = radius / Math.sin(camera.fov * Math.PI / 360) * 1.15;
          camera.position.set(centre.x + distance * Math.cos(el) * Math.sin(az), centre.y + distance * Math.sin(el),
                              centre.z + distance * Math.cos(el) * Math.cos(az));
          controls.target.copy(centre);
          controls.update();
          resize();
          canvas.dataset.loaded = "true";
          resolve();
        }, reject);
      });
    }
    resize();
    return { show, render, resize };
  }

  function text(tag, content, className) {
    const node = document.createElement(tag);
    if (content !== undefined && content !== null) node.textContent = content;
    if (className) node.className = className;
    return node;
  }

  function formatNumber(value) {
    if (value === null || value === undefined) return "-";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4);
    return String(value);
  }

  // One result's numbers as a small table (the same keys summary.json and the HTTP answer use).
  function numbersTable(item) {
    const table = text("table", null, "numbers");
    for (const [key, value] of Object.entries(item.numbers || {})) {
      const row = table.insertRow();
      row.insertCell().textContent = key;
      row.insertCell().textContent = formatNumber(value);
    }
    return table;
  }

  // viewer: one made earlier for this page (a page keeps one WebGL context), or null to make it.
  function renderGallery(data, root, viewer) {
    viewer = viewer || createViewer(root.querySelector("canvas.recon-canvas"));
    const caption = root.querySelector(".recon-caption");
    const cards = root.querySelector(".recon-cards");
    cards.textContent = "";
    let first = null;
    data.items.forEach((item, index) => {
      const card = text("article", null, "card " + (item.status === "ok" ? "ok" : "failed"));
      card.dataset.index = String(index);
      if (item.preview) {
        const img = document.createElement("img");
        img.src = item.preview;
        img.alt = "preview of " + item.name;
        card.appendChild(img);
      }
      card.appendChild(text("h2", item.name));
      const verdict = item.status + (item.confidence === null || item.confidence === undefined ? "" : " (confidence " + item.confidence.toFixed(2) + ")");
      card.appendChild(text("p", verdict, "status"));
      if (item.error) card.appendChild(text("p", item.error, "error"));
      card.appendChild(numbersTable(item));
      const links = text("p", null, "links");
      for (const [format, href] of Object.entries(item.files || {})) {
        const a = document.createElement("a");
        a.href = href;
        a.textContent = format;
        a.setAttribute("download", "");
        links.appendChild(a);
      }
      card.appendChild(links);
      if (item.glb) {
        const button = text("button", "view in 3D");
        button.addEventListener("click", () => select(index));
        card.appendChild(button);
        if (first === null) first = index;
      }
      cards.appendChild(card);
    });

    function select(index) {
      const item = data.items[index];
      cards.querySelectorAll(".card").forEach((c) => c.classList.toggle("selected", c.dataset.index === String(index)));
      caption.textContent = item.name + ": drag to orbit, scroll to zoom, right-drag to pan";
      return viewer.show(base64ToBuffer(item.glb), item.view);
    }
    if (first !== null) select(first);
    else caption.textContent = "no mesh to show";
    return { viewer, select };
  }

  window.ReconViewer = { createViewer, renderGallery, base64ToBuffer };
  document.addEventListener("DOMContentLoaded", () => {
    const data = document.getElementById("recon-data");
    if (data) renderGallery(JSON.parse(data.textContent), document.body);
  });
})();
